"""Feedback from SES: events verified at the border (SNS signature, SQS), parsed into small
records, and the rules that act on them (suppress, unsubscribe, count soft bounces).
"""
