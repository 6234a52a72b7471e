"""Who is calling: named API keys (API_KEYS_FILE), their limits, and what each may see."""
