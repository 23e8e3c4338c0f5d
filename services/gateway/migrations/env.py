from bo_common.migrations_env import run

run()
