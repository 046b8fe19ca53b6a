-- The bundled facts database for the offline examples. The sql tool builds it into a cached
-- SQLite file on first use (tomasulo.tools.builtins.database_from_script); no binary is committed.
CREATE TABLE countries (
    name TEXT PRIMARY KEY,
    continent TEXT NOT NULL,
    capital TEXT NOT NULL,
    population INTEGER NOT NULL,   -- 2023 estimate
    area_km2 INTEGER NOT NULL
);
CREATE TABLE mountains (
    name TEXT PRIMARY KEY,
    country TEXT NOT NULL REFERENCES countries(name),
    height_m INTEGER NOT NULL,
    first_ascent INTEGER
);
CREATE TABLE rivers (
    name TEXT PRIMARY KEY,
    country TEXT NOT NULL REFERENCES countries(name),
    length_km INTEGER NOT NULL
);

INSERT INTO countries VALUES
    ('Nepal', 'Asia', 'Kathmandu', 30900000, 147516),
    ('Pakistan', 'Asia', 'Islamabad', 240500000, 881913),
    ('Tanzania', 'Africa', 'Dodoma', 67400000, 947303),
    ('Argentina', 'South America', 'Buenos Aires', 46600000, 2780400),
    ('United States', 'North America', 'Washington, D.C.', 334900000, 9833520),
    ('Russia', 'Europe', 'Moscow', 144400000, 17098246),
    ('France', 'Europe', 'Paris', 68200000, 643801),
    ('Japan', 'Asia', 'Tokyo', 124500000, 377975),
    ('Egypt', 'Africa', 'Cairo', 112700000, 1002450),
    ('Brazil', 'South America', 'Brasília', 216400000, 8515767);

INSERT INTO mountains VALUES
    ('Mount Everest', 'Nepal', 8849, 1953),
    ('Kangchenjunga', 'Nepal', 8586, 1955),
    ('Lhotse', 'Nepal', 8516, 1956),
    ('K2', 'Pakistan', 8611, 1954),
    ('Nanga Parbat', 'Pakistan', 8126, 1953),
    ('Kilimanjaro', 'Tanzania', 5895, 1889),
    ('Aconcagua', 'Argentina', 6961, 1897),
    ('Denali', 'United States', 6190, 1913),
    ('Mount Elbrus', 'Russia', 5642, 1874),
    ('Mont Blanc', 'France', 4806, 1786),
    ('Mount Fuji', 'Japan', 3776, 663);

INSERT INTO rivers VALUES
    ('Nile', 'Egypt', 6650),
    ('Amazon', 'Brazil', 6400),
    ('Mississippi', 'United States', 3730),
    ('Volga', 'Russia', 3531),
    ('Paraná', 'Argentina', 4880),
    ('Loire', 'France', 1006),
    ('Shinano', 'Japan', 367),
    ('Indus', 'Pakistan', 3180);
