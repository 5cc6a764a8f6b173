"""The Teams app package: manifest template, icons, and the packager (`python -m manifest.package`)."""
