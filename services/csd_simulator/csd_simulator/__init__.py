"""A stand-in for the custodian / depository: answers instructions with status messages."""
