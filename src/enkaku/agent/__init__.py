"""The customer's program: identity, session runtime, capture, input, consent."""
