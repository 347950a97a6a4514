-- Run once by the postgres image on an empty data folder, as POSTGRES_USER: MLflow's backend
-- store is the POSTGRES_DB database (mlflow); the service's job records and schedules get
-- their own database, so that their tables never meet MLflow's.
CREATE DATABASE repalign;
