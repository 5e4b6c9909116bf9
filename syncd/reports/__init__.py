"""What syncd shows people: one number format and rich tables (``fmt``), progress renderers (``progress``),
the status page's data (``status``), its HTML (``status_page``) and its HTTP route (``web``)."""
