"""deai: decentralized AI — learn together without moving data or trusting a centre."""

from deai.config import ConfigError, ExperimentConfig, load_config
from deai.engine import Result, resume, run

__version__ = "0.1.0"
__all__ = ["ConfigError", "ExperimentConfig", "Result", "load_config", "resume", "run"]
