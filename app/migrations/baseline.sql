-- The platform's tables as they were before the collection-jobs feature
-- (Alembic revision "baseline"). The guide's SQL (method 2) runs on top of this. Every
-- statement can run again: an interrupted baseline is finished by running it again.

-- squawk-ignore require-lock-timeout -- the baseline: tables production had before this project
CREATE TABLE IF NOT EXISTS analysts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    email VARCHAR(255) NOT NULL UNIQUE,
    name VARCHAR(100) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()
);

-- squawk-ignore require-lock-timeout -- the baseline: tables production had before this project
CREATE TABLE IF NOT EXISTS data_collection_logs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    analyst_id UUID NOT NULL REFERENCES analysts(id),
    collection_type VARCHAR(50) NOT NULL,
    status VARCHAR(20) NOT NULL,
    -- squawk-ignore prefer-bigint-over-int -- the platform's existing column, as it is
    records_collected INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()
);

-- squawk-ignore require-concurrent-index-creation -- the baseline: production has it already
CREATE INDEX IF NOT EXISTS idx_data_collection_logs_analyst_id ON data_collection_logs(analyst_id);
