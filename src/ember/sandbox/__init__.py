"""The sandbox seam: backends that start isolated environments running the agent."""
