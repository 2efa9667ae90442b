"""Websocket streams."""
