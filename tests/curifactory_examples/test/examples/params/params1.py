from test.examples.params.basic import Args


def get_params():
    return [Args(name="test1", starting_data=[0, 1, 2])]
