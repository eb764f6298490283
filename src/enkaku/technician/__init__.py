"""The technician's command-line client: login, connect, and the local VNC bridge."""
