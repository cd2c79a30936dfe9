"""Operations over the models for the platform's API and workers."""
