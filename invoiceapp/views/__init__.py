"""Page blueprints: landing and dashboard, invoices, organizations."""
