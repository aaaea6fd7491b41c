package store

// usageColumns extend keyColumns (migration 0030).
const usageColumns = `, key_usage`
