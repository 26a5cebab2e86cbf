"""``python -m handoff.service``: serve the handoff API and the web chat."""

from handoff.service.app import main

main()
