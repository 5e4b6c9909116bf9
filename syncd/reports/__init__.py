"""Reports a person reads: plan, backtest, account and status reports (tables, JSON, charts)."""
