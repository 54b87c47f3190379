"""Local stand-ins for Upstash's REST services, so clipdex runs and is tested offline through the official SDKs."""
