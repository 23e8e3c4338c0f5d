"""Gateway: trade intake, API keys and desks, and the trade status view."""
