"""Agents: AgentSpec and triggers, the model and embedding factories, one subpackage per domain."""
