"""``python -m service``: serve the handoff API and the web chat."""

from service.app import main

main()
