"""Markers the system prompt uses for machine-readable parts.

The briefing writes them (graphs/briefing.py) and the offline model reads
them; a real model simply reads them as text.
"""

AGENT_MARKER = "AGENT:"
TOPICS_MARKER = "YOUR TOPICS:"
CASE_FILE_MARKER = "CASE FILE (JSON):"
BRIEFING_MARKER = "BRIEFING:"
EARLIER_MARKER = "EARLIER IN THIS CONVERSATION:"
NOTICE_MARKER = "NOTICE:"
JUST_RECEIVED = "You have just received this conversation: open with what you know."
