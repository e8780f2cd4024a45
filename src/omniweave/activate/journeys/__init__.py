"""Journeys: behaviour-triggered automation (model, definitions, the state machine); the engine is in activate/service/journeys."""
