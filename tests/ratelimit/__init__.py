"""Tests of veneer.ratelimit."""
