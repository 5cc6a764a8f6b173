// Example parameters: copy, change the names, and deploy with
//   az deployment group create -g <resource group> -f deploy/azure/main.bicep -p deploy/azure/main.bicepparam
// No secret is written in this file: each is read from the shell that runs the deployment, so keep them in a
// password manager and export them just for that command (`make key` prints a data key and an audit key).
using './main.bicep'

param name = 'oakfield-esafety'
param image = 'oakfieldacr.azurecr.io/esafety-bot:0.1.0'
param registryServer = 'oakfieldacr.azurecr.io'
param schoolConfigPath = 'config/demo.yaml'

// UserAssignedMSI needs no secret; for SingleTenant set botAppId and export MicrosoftAppPassword.
param botIdentity = 'UserAssignedMSI'
param botAppId = ''
param botAppPassword = readEnvironmentVariable('MicrosoftAppPassword', '')

param minReplicas = 2
param maxReplicas = 3

param dataKey = readEnvironmentVariable('ESAFETY_DATA_KEY')
param auditKey = readEnvironmentVariable('ESAFETY_AUDIT_KEY')
param dataKeysOld = readEnvironmentVariable('ESAFETY_DATA_KEYS_OLD', '')
param auditKeysOld = readEnvironmentVariable('ESAFETY_AUDIT_KEYS_OLD', '')
param postgresAdminPassword = readEnvironmentVariable('ESAFETY_POSTGRES_PASSWORD')
param postgresBackupRetentionDays = 35
