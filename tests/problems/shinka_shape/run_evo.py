"""How ShinkaEvolve would run this folder (evoengine reads only task_sys_msg from it)."""

from shinka.core import EvolutionConfig, ShinkaEvolveRunner
from shinka.database import DatabaseConfig
from shinka.launch import LocalJobConfig

task_sys_msg = "Choose three weights in [-2, 2]; the closer to the hidden target, the better."

if __name__ == "__main__":
    ShinkaEvolveRunner(
        evo_config=EvolutionConfig(task_sys_msg=task_sys_msg, num_generations=30, init_program_path="initial.py"),
        db_config=DatabaseConfig(num_islands=2),
        job_config=LocalJobConfig(eval_program_path="evaluate.py"),
    ).run()
