"""The agent's window (Tk): the ID and password, consent dialogs, the session banner.

Thread model and the customer's view: docs/agent-window.md.
"""
