"""Service layer: the operations a user asks for, composed from core and adapters."""
