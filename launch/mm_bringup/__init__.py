"""Bringup of Muscle Memory servos: which nodes start, with which parameters (`bringup`), and a runner."""
