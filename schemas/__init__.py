"""The single source of truth for tables, records, configs and expectation suites."""
