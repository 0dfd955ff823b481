"""The scenario behind ``veneer demo``: a private Redis, a seeded source, three ways to read it."""
