"""The ISO 20022 XSDs this library validates against (a package so that they ship as data)."""
