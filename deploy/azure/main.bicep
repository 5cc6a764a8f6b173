// The eSafety bot on Azure: Azure Bot (single tenant or user-assigned managed identity), Container Apps (two
// replicas or more, health probes), PostgreSQL Flexible Server and Key Vault. Secrets live only in Key Vault;
// the container app reads them through its user-assigned managed identity. docs/deploy.md explains each step.
//
//   az deployment group create -g <resource group> -f deploy/azure/main.bicep -p deploy/azure/main.bicepparam
//
// The secure parameters below are written to Key Vault and nowhere else (Azure does not log secure parameters).

targetScope = 'resourceGroup'

@description('Short lower-case name used to derive every resource name, e.g. "oakfield-esafety".')
@minLength(3)
@maxLength(18)
param name string

param location string = resourceGroup().location

@description('How the bot proves who it is to Teams: its own app registration in your tenant (SingleTenant), or the user-assigned managed identity this template creates (UserAssignedMSI, no secret to rotate).')
@allowed([
  'SingleTenant'
  'UserAssignedMSI'
])
param botIdentity string = 'UserAssignedMSI'

@description('SingleTenant only: the app registration\'s Application (client) ID. Ignored for UserAssignedMSI.')
param botAppId string = ''

@description('SingleTenant only: a client secret of that app registration. Leave empty for UserAssignedMSI.')
@secure()
param botAppPassword string = ''

param tenantId string = tenant().tenantId

@description('The container image to run, e.g. myregistry.azurecr.io/esafety-bot:0.2.0 (built from the repository\'s Dockerfile).')
param image string

@description('The registry\'s login server when it is an Azure Container Registry the managed identity may pull from (give the identity AcrPull); empty for a public image.')
param registryServer string = ''

@description('The school (or trust) settings file inside the image, relative to /app.')
param schoolConfigPath string = 'config/demo.yaml'

@description('Replicas always running: two, so that one can be replaced while the other serves.')
@minValue(2)
param minReplicas int = 2

@maxValue(10)
param maxReplicas int = 3

@description('Encrypts case details at rest: `make key` prints one. Keep a copy offline, apart from the backups.')
@secure()
param dataKey string

@description('Seals the audit trail: `make key` prints one, separate from the data key.')
@secure()
param auditKey string

@description('Comma-separated data keys being rotated out (docs/operations.md); empty otherwise.')
@secure()
param dataKeysOld string = ''

@description('Comma-separated audit keys rotated out, kept so that older entries still verify; empty otherwise.')
@secure()
param auditKeysOld string = ''

param postgresAdminLogin string = 'esafetyadmin'

@description('The PostgreSQL administrator\'s password.')
@secure()
param postgresAdminPassword string

@description('Days of PostgreSQL point-in-time backups (7 to 35); 35 suits safeguarding records.')
@minValue(7)
@maxValue(35)
param postgresBackupRetentionDays int = 35

param postgresSkuName string = 'Standard_B1ms'
param postgresSkuTier string = 'Burstable'

@allowed([
  'F0'
  'S1'
])
param botSku string = 'S1'

var suffix = uniqueString(resourceGroup().id, name)
var databaseName = 'esafety'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var appName = '${name}-app'
var usesPassword = botIdentity == 'SingleTenant'
var rotatingData = !empty(dataKeysOld)
var rotatingAudit = !empty(auditKeysOld)

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${name}-id'
  location: location
}

resource logs 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: '${name}-logs'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 90
  }
}

// ---- Key Vault: every secret the app reads, referenced by URI, readable only by the app's identity ----

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: take('${name}-kv-${suffix}', 24)
  location: location
  properties: {
    tenantId: tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true // a deleted data key would make every case unreadable
  }
}

resource identityReadsSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource dataKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'esafety-data-key'
  properties: { value: dataKey }
}

resource auditKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'esafety-audit-key'
  properties: { value: auditKey }
}

// Key Vault holds no empty secrets: the rotation ones exist only while a rotation is under way.
resource dataKeysOldSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (rotatingData) {
  parent: vault
  name: 'esafety-data-keys-old'
  properties: { value: dataKeysOld }
}

resource auditKeysOldSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (rotatingAudit) {
  parent: vault
  name: 'esafety-audit-keys-old'
  properties: { value: auditKeysOld }
}

resource appPasswordSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (usesPassword) {
  parent: vault
  name: 'microsoft-app-password'
  properties: { value: botAppPassword }
}

resource databaseUrlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'database-url'
  properties: {
    value: 'postgresql+asyncpg://${uriComponent(postgresAdminLogin)}:${uriComponent(postgresAdminPassword)}@${postgres.properties.fullyQualifiedDomainName}:5432/${databaseName}?ssl=require'
  }
}

// ---- PostgreSQL Flexible Server ----

resource postgres 'Microsoft.DBforPostgreSQL/flexibleServers@2022-12-01' = {
  name: '${name}-pg-${suffix}'
  location: location
  sku: {
    name: postgresSkuName
    tier: postgresSkuTier
  }
  properties: {
    version: '16'
    administratorLogin: postgresAdminLogin
    administratorLoginPassword: postgresAdminPassword
    storage: { storageSizeGB: 32 }
    backup: {
      backupRetentionDays: postgresBackupRetentionDays
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: { mode: 'Disabled' }
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2022-12-01' = {
  parent: postgres
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

// Public access limited to Azure's own addresses. Better still: put the environment and the server in one
// virtual network with private access (see docs/deploy.md, section 3).
resource postgresFromAzure 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2022-12-01' = {
  parent: postgres
  name: 'AllowAzureServices'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

// ---- Container Apps: the environment, the share for var/ (audit checkpoints), and the app ----

resource storage 'Microsoft.Storage/storageAccounts@2023-01-01' = {
  name: take('${replace(name, '-', '')}st${suffix}', 24)
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_ZRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    supportsHttpsTrafficOnly: true
  }
}

resource share 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-01-01' = {
  name: '${storage.name}/default/esafety-var'
  properties: { shareQuota: 1 }
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${name}-env'
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

resource environmentShare 'Microsoft.App/managedEnvironments/storages@2024-03-01' = {
  parent: environment
  name: 'esafety-var'
  properties: {
    azureFile: {
      accountName: storage.name
      accountKey: storage.listKeys().keys[0].value
      shareName: 'esafety-var'
      accessMode: 'ReadWrite'
    }
  }
  dependsOn: [share]
}

var publicUrl = 'https://${appName}.${environment.properties.defaultDomain}'
var appId = usesPassword ? botAppId : identity.properties.clientId

var keyVaultSecrets = concat(
  [
    { name: 'data-key', keyVaultUrl: dataKeySecret.properties.secretUri, identity: identity.id }
    { name: 'audit-key', keyVaultUrl: auditKeySecret.properties.secretUri, identity: identity.id }
    { name: 'database-url', keyVaultUrl: databaseUrlSecret.properties.secretUri, identity: identity.id }
  ],
  usesPassword
    ? [{ name: 'app-password', keyVaultUrl: appPasswordSecret.properties.secretUri, identity: identity.id }]
    : [],
  rotatingData
    ? [{ name: 'data-keys-old', keyVaultUrl: dataKeysOldSecret.properties.secretUri, identity: identity.id }]
    : [],
  rotatingAudit
    ? [{ name: 'audit-keys-old', keyVaultUrl: auditKeysOldSecret.properties.secretUri, identity: identity.id }]
    : []
)

var secretEnv = concat(
  [
    { name: 'ESAFETY_DATA_KEY', secretRef: 'data-key' }
    { name: 'ESAFETY_AUDIT_KEY', secretRef: 'audit-key' }
    { name: 'DATABASE_URL', secretRef: 'database-url' }
  ],
  usesPassword ? [{ name: 'MicrosoftAppPassword', secretRef: 'app-password' }] : [],
  rotatingData ? [{ name: 'ESAFETY_DATA_KEYS_OLD', secretRef: 'data-keys-old' }] : [],
  rotatingAudit ? [{ name: 'ESAFETY_AUDIT_KEYS_OLD', secretRef: 'audit-keys-old' }] : []
)

var plainEnv = concat(
  [
    { name: 'MicrosoftAppType', value: botIdentity }
    { name: 'MicrosoftAppId', value: appId }
    { name: 'MicrosoftAppTenantId', value: tenantId }
    { name: 'ESAFETY_PUBLIC_URL', value: publicUrl }
    { name: 'ESAFETY_CONFIG', value: schoolConfigPath }
    { name: 'HOST', value: '0.0.0.0' }
    { name: 'PORT', value: '8080' }
  ],
  // azure-identity (Graph, with GRAPH_MANAGED_IDENTITY=1) finds the user-assigned identity by this client id.
  usesPassword ? [] : [{ name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }]
)

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: appName
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    managedEnvironmentId: environment.id
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: 8080
        transport: 'auto'
        allowInsecure: false
      }
      secrets: keyVaultSecrets
      registries: empty(registryServer) ? [] : [{ server: registryServer, identity: identity.id }]
    }
    template: {
      containers: [
        {
          name: 'esafety'
          image: image
          // The image's CMD (scripts/container-start.sh) starts the one process; nothing is overridden here.
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
          env: concat(plainEnv, secretEnv)
          probes: [
            {
              type: 'Startup'
              httpGet: { path: '/healthz', port: 8080 }
              periodSeconds: 5
              failureThreshold: 60 // migrations run before the app listens
            }
            {
              type: 'Liveness'
              httpGet: { path: '/healthz', port: 8080 }
              periodSeconds: 30
              timeoutSeconds: 5
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: { path: '/readyz', port: 8080 }
              periodSeconds: 10
              timeoutSeconds: 5
              failureThreshold: 3
            }
          ]
          volumeMounts: [{ volumeName: 'var', mountPath: '/app/var' }]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
      }
      volumes: [
        {
          name: 'var'
          storageType: 'AzureFile'
          storageName: environmentShare.name
          mountOptions: 'uid=10001,gid=10001,dir_mode=0700,file_mode=0600'
        }
      ]
    }
  }
  dependsOn: [identityReadsSecrets, database, postgresFromAzure]
}

// ---- Azure Bot: tells Teams where the bot lives ----

resource bot 'Microsoft.BotService/botServices@2022-09-15' = {
  name: '${name}-bot'
  location: 'global'
  kind: 'azurebot'
  sku: { name: botSku }
  properties: {
    displayName: name
    endpoint: '${publicUrl}/api/messages'
    msaAppId: appId
    msaAppType: botIdentity
    msaAppTenantId: tenantId
    msaAppMSIResourceId: usesPassword ? null : identity.id
    disableLocalAuth: false
  }
}

resource teams 'Microsoft.BotService/botServices/channels@2022-09-15' = {
  parent: bot
  name: 'MsTeamsChannel'
  location: 'global'
  properties: {
    channelName: 'MsTeamsChannel'
    properties: { isEnabled: true }
  }
}

output publicUrl string = publicUrl
output messagingEndpoint string = '${publicUrl}/api/messages'
output microsoftAppId string = appId
output keyVaultName string = vault.name
output postgresHost string = postgres.properties.fullyQualifiedDomainName
