"""Writes of the kyc app (KYC/CIP, compliance holds, AML, funding). Import from the submodules."""
