"""Running a suite: its options, its checkpoint series, measuring them from the record store,
progress lines, executors past one machine."""
