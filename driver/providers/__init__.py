"""Data providers of `driver fetch` (one module each behind driver.providers.base.Provider)."""
