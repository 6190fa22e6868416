// Policy and configuration files.
