"""The events the subscribers themselves emit (through the same outbox)."""

PROJECT_COMPLETED = "project.completed"
GOAL_REACHED = "goal.reached"
MILESTONE_PAYLOAD_VERSION = 1
