"""Campaign management: the workflow with approvals and its scheduler (app/campaigns/workflow.py)."""
