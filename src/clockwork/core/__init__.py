"""Sans-IO core: vocabulary, estimates, the controller's view of the cluster, scheduling policies.

Nothing in this package reads a clock, opens a socket, starts a thread or keeps global state.
Time always arrives as an argument, in integer nanoseconds.
"""
