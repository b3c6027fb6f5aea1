"""The search-space DSL: parsing, configuration, domains, candidate enumeration, overrides."""
