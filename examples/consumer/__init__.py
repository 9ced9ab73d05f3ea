"""A downstream consumer: CRM sync from the lead topic."""
