"""Operations: delivery statistics, pre-send checks (doctor) and SES provisioning."""
