"""Outbound HTTP to addresses that clients choose (input URLs, webhooks, S3 endpoints)."""
