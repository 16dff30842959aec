"""The parts of bench/bench_bad_inputs.py (issue 19's bad-input campaign): common helpers (common.py), the fixtures
the cases run against (fixtures.py), the case runner and its judges (runner.py), the HTTP cases' server and judges
(http_cases.py), the case catalog (catalog.py: cases_data.py, cases_training.py, cases_models.py, cases_serve.py, with
the setup helpers of setups.py). bench/bench_bad_inputs.py is the command line."""
