"""Customer service: General Support -> Technical Specialist -> Billing Expert, over a fake back office."""
