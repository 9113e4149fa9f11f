"""threat_models package."""
