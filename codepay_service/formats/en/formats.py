# Operators compare times with gateway logs and notifications to the second: ISO-like, 24-hour, UTC.
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
DATE_FORMAT = "Y-m-d"
