"""Wide-EP MoE optimization workbench: TensorRT-LLM's DeepSeek-R1 wide-EP techniques rebuilt on Hopper."""

__version__ = "0.1.0"
