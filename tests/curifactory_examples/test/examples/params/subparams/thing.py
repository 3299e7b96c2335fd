from test.examples.params.basic import Args


def get_params():
    return [Args(name="subtest", starting_data=[-1, 2, 5])]
