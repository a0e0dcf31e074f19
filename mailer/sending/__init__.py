"""Sending: campaigns and their ledger of deliveries, the engine that works through it, the
guard that stops it, and the use cases every entrance calls.
"""
