"""Reports a person reads: plan, backtest, account and status reports (tables, JSON, charts).

Also one number format and rich tables (``fmt``), the progress renderers (``progress_render``), and the
status page: its data (``status``), its HTML (``status_page``) and its HTTP route (``web``).
"""
