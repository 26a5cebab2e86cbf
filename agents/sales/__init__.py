"""Sales: Lead Qualifier -> Product Specialist -> Closer, over a small CRM and price list."""
