"""The handoff core: builder, boundary, intake, agent node, gate, briefing, journal, human node, persistence, session; one module per domain graph."""
