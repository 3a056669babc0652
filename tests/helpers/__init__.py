"""Code the tests share: paths and runners (project.py); probe callbacks that runs load as
`_target_=helpers.<module>.<Class>` (tests/ on PYTHONPATH); fakes and local servers."""
