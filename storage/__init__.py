"""SQL persistence: models, repositories returning dataclasses, Bot Framework storage, migrations."""
